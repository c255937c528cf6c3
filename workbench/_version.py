"""The package version, in a module of its own so that services can read it without importing the
package root (which imports the services)."""

__version__ = "0.1.0"
