"""The operator's web app: live views, watchlist, alerts, history and search by photo."""
