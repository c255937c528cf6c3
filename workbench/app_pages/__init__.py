"""Streamlit pages (routed by streamlit_app.py). Thin: widgets, one service call, render."""
