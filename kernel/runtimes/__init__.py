"""Concrete runtimes. Import the one you need: ``kernel.runtimes.subprocess`` or
``kernel.runtimes.http`` (the latter needs ``httpx``)."""
