"""The live store on Redis, standalone or Cluster."""
