"""The gateway's edges: where outside messages become the gRPC contract's, and back.

    grpc_service.py  authgw.v1.Authorization: the acquirer-facing gRPC servicer, and the only
                     place where gateway errors become gRPC status codes
    validation.py    the contract's rules for an AuthorizeRequest (INVALID_ARGUMENT naming the field)

Everything behind an edge (routing, stand-in, settlement) works on the gRPC contract's
messages; a new edge (ISO 8583 towards acquirers or issuer hosts) converts at its border.
"""
