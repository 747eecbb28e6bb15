"""longtake.eval"""
