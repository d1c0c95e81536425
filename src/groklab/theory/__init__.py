"""Li2 theory in code: irreducible representations, energy E, back-propagated gradient G_F, and the
energy landscape on training subsets (landscape: the generalizing vs memorizing maxima)."""
