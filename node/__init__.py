"""The camera node: captures, encodes once, serves live, records segments and ships them."""
