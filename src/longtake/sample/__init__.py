"""longtake.sample"""
