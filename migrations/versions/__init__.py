"""Migration scripts (a package so that they ship with an installed ``maas``)."""
