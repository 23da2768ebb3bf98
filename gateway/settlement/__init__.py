"""The gateway's side of settlement: how stand-in's settlement worker reaches issuer hosts.

    sender.py   advices over IssuerHost/Advise, through the router's members (GrpcAdviceSender)
    wiring.py   the worker of a gateway, configured by `[standin]` and `[settlement]`
    command.py  `authgw settle`: one settlement worker without a gateway around it

The worker itself (journal reading, leases, order, pacing, dead letters) is
standin/settlement/: it knows nothing of gRPC.
"""
