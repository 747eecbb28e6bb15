"""longtake.model"""
