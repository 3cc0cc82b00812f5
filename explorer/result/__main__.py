"""python -m explorer.result: the result document's JSON Schema, generated from its models (what
explorer/result.schema.json holds)."""

import sys

from explorer.result.schema import schema_text

sys.stdout.write(schema_text())
