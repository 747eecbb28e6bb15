"""longtake.train"""
