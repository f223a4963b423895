"""The control site's SSH certificate issuer: short-lived certificates per flow run.

    facts.py    what the control site knows of a run (Prefect) and of the fleet (inventory)
    service.py  the issuer's configuration, its decision + signing, and its HTTP endpoint

The decision itself is the pure planner ``hotspare/planning/certificates.py``; the signing is
OpenSSH's ``ssh-keygen`` (``hotspare/adapters/ssh_ca.py``). docs/trust-model.md says who holds what.
"""
