"""Models of this app arrive with its issue; the app is registered now so the layout is stable."""
