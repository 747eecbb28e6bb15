"""longtake.video"""
