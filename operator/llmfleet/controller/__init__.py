"""kopf handlers: the operator's event loop. Thin; logic lives in the pure core."""
