"""Bytes and text in, normalized `Entry` values out: feeds (feedparser) and seed files."""
