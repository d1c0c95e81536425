"""Li2 theory in code: irreducible representations, energy E, back-propagated gradient G_F."""
