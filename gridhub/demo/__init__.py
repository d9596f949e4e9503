"""Demo companions for `make up`: a unit's webhook receiver and a traffic simulator."""
