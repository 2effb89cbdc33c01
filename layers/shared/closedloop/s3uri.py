"""`s3://bucket/key` URIs, parsed one way for every route.

(The preparation script, `prep/prepare.py`, runs in a Glue or Processing job without this package
and keeps its own three-line copy.)
"""

from __future__ import annotations

from closedloop.errors import InvalidEventError


def split_s3_uri(uri: str, *, key_required: bool = True) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` URI; with `key_required=False` the key may be empty
    (a bucket or a prefix).

    Raises:
        InvalidEventError: not an s3:// URI, or without a bucket (or a key, when one is required).
            The message never holds the URI itself.
    """
    if not uri.startswith("s3://"):
        raise InvalidEventError("not an s3:// URI", uri_scheme=uri.split(":", 1)[0][:10])
    bucket, _, key = uri[5:].partition("/")
    if not bucket or (key_required and not key):
        raise InvalidEventError("an s3:// URI without bucket or key")
    return bucket, key
