"""FastStream subscribers (one per command topic) and the command handlers they run."""
