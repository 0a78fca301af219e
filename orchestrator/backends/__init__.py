"""Engines behind one protocol (base.Backend): Docker on one host, Nomad on a cluster."""
