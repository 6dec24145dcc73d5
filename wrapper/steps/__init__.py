"""The wrapper's pipeline steps, one module each, in the order `wrapper.pipeline` runs them."""
