"""The self-contained demo: a whole grid on one machine, with a stand-in basf2 release."""
