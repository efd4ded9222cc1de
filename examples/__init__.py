"""Examples of using shopflow from another team's code (not shipped with shopflow)."""
