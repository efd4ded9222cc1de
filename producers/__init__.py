"""Publishing result events and dead letters; the client upstream services use."""
