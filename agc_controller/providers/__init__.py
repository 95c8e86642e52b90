"""Data planes behind one seam: `Provider.apply(model) -> ApplyResult`."""
