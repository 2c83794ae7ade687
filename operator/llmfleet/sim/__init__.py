"""Digital twin: trace readers and (later) the trace-replay simulator."""
