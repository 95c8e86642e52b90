"""The Gateway API conformance runner (`make conformance`); main.py says what runs."""
