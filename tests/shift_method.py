"""A test method whose prepared state is one learned shift that `apply` adds to the sources. Subclasses say how
`prepare` finds it; the runner tests (and their spawned workers, which import this by name) share it."""

from methods.base import EditMethod, EditResult


class Shift(EditMethod):
    shift = None  # set by a subclass's prepare

    def prepared_state(self):
        return {"shift": self.shift}

    def load_prepared_state(self, state):
        self.shift = state["shift"]

    def apply(self, backbones, sources, edit):
        return EditResult(edited_images=(sources.images + self.shift).clamp(-1, 1))
