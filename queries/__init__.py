"""The HTTP read side: balances, products, health and metrics (CONTRACT.md, "Queries")."""
