"""The server as an OPA control plane: sidecar registrations, the bundle service OPA pulls
from, and the decision logs and status reports OPA uploads.

- :mod:`server.opa.sidecars`: registrations, their bearer tokens (sha256 stored), the
  instances seen behind each and what their status reports said;
- :mod:`server.opa.serve`: a sidecar's bundle as OPA's bundle API serves it (ETag, 304,
  long polling);
- :mod:`server.opa.ingest`: OPA decision-log uploads → records of our decision log;
- :mod:`server.opa.status`: OPA status reports, read into what ``GET /sidecars`` shows;
- :mod:`server.opa.keys`: the public keys a sidecar verifies our bundles with.
"""
