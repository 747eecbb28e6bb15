"""longtake.world"""
