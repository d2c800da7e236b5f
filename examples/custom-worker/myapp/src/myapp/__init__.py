"""An example of a team's own pipelines, shipped in a worker image built FROM langscale's."""
