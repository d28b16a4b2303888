"""The web playground: a page at ``/`` to try the models in a browser (plain HTML, CSS and JavaScript)."""
