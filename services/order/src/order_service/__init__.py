"""Order service: the HTTP edge (POST /orders -> OrderPlaced) and the order timeline view."""
