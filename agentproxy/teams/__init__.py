"""A proxy shared by a team: who belongs to which group, agent profiles, credentials, quotas and
an audit log. The rules are pure (:mod:`.config`, :mod:`.identity`, :mod:`.quotas`); the HTTP
layer and the stores do the I/O."""
