"""The HTTP contract: typed models of every query, body and answer, one module per resource."""
