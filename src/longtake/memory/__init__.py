"""longtake.memory"""
