"""`authgw top`: a live view of a gateway fleet from what it already exports.

scrape.py    one read of a gateway's Prometheus endpoint
rates.py     rates and histogram quantiles between two scrapes
model.py     one gateway's view over an interval (mode, pools, answers, p99, journal, exposure)
sources.py   etcd's membership and the Redis journal, when asked
render.py    a frame as rich tables
command.py   the command line and the refresh loop
"""
