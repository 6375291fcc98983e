"""eventshop recommendations (see README.md). Importing this package opens nothing."""
