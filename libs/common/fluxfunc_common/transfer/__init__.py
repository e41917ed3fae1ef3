"""Moving a deployment's objects in and out: export, import, and migration from DataFlux Func.

- :mod:`.bundle`: what moves (script sets, scripts, env variables, API auth definitions,
  sync/async APIs, cron jobs, connectors) as rows in their exported form, plus the secrets when
  asked for; :mod:`.connectors`: a connector's exported form, secrets and checks.
- :mod:`.archive`: the deterministic zip of a bundle (``fluxfunc export``); it also opens
  DataFlux Func's own script-set export files (:mod:`.dff_export`) and its 1.x
  password-protected packages (:mod:`.dff_package`); :mod:`.dff_connectors` converts their
  connectors (and those of its database).
- :mod:`.exporting`: a bundle from the store. :mod:`.planning`: what an import would do
  (create / update / unchanged / skip / conflict per object). :mod:`.applying`: the plan
  written in one store transaction, then workers and Beat told as the management API tells
  them (:mod:`fluxfunc_common.changes`). :mod:`.importing`: the three
  in a row, for the CLI and the API.
- :mod:`.sealing`: stored secrets opened for an export and sealed again on import;
  :mod:`.secretbox`: their passphrase encryption in the file (scrypt + AES-GCM).
- :mod:`.dff_database`, :mod:`.dff_convert`, :mod:`.dff_cipher`: ``fluxfunc migrate-from-dff``
  reads a DataFlux Func database, converts its rows and decrypts its password env variables,
  API auth passwords (:mod:`.dff_api_auth`) and connector secrets.

docs/migration-from-dataflux-func.md describes the commands.
"""
