"""Attacks: search the input box for points that push outputs to extremes (counterexamples, soundness checks)."""
