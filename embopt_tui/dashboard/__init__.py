"""The Textual dashboard: the app, its state folded from engine events, and its widgets."""
