"""shopflow's composition root: settings, the runtime that wires the parts, the CLI."""
