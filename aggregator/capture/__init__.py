"""The capture stage: the full article behind each feed item (issue 15).

For each new item with a link, the pipeline fetches the article page politely and keeps
what it finds. The pieces, each usable on its own and none doing I/O it was not handed:

- `netguard` (in `aggregator`, as source fetches need it too): refuses URLs whose host
  resolves to a private, loopback or otherwise non-public address, on every redirect hop.
- `robots`: robots.txt rules per host, cached with an expiry; `allowed()` decides.
- `pace`: one request per host every few seconds, and when a failed capture is tried
  again or given up.
- `extract`: the article's text, title, author and date (trafilatura), sanitized, with a
  verdict that keeps boilerplate and near-empty pages from being stored as articles.
- `warc`: each capture's request and response kept as WARC records (warcio).

How it plugs in: the pipeline keeps pending captures as a queue in the archive; a worker
takes one, asks `pace` for its host's turn, checks `robots.allowed`, fetches through the
guarded fetcher, writes the WARC records, runs `extract`, and stores an article (or the
verdict's reason), or asks `pace.next_attempt` when to try again after a failure.
"""
