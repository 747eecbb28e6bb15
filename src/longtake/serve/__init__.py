"""longtake.serve"""
