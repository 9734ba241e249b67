"""Behaviour videos rendered headless from recorded states."""

from connectofly.videos.gl import select_headless_gl

select_headless_gl()
