"""The Phala Cloud API as phala-sync reads it: one concern per module.

- :mod:`~sync.api.client`: :class:`~sync.api.client.PhalaClient`, paging the listed endpoints
  (declared in :mod:`sync.endpoints`) with bounded concurrency and retries.
- :mod:`~sync.api.pages`: one page's bytes to validated, normalized items (or quarantined ones).
- :mod:`~sync.api.retry`: when to try again and how long to wait.
- :mod:`~sync.api.responses`: an error answer to a typed error with a readable message.
- :mod:`~sync.api.redaction`: the API key out of sight: in messages, URLs and log records.

Nothing here touches the database.
"""
