"""The HTTP edge: what every request passes before a handler, and the one answer shape.

Admission (a bound on requests in flight), body reading (bounded in size and time), body
decoding, CORS, the envelope and error catalogue, the request log and its 500 answer, the
server-to-server fast path and what is recorded about a sender."""
