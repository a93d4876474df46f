"""One registry per choice (issue 17): every method is named once, in
:mod:`qsmbids.recon.registry`, and the command line, the settings, the nodes' dispatch,
the inversion table and CITATION.md all follow it."""

from __future__ import annotations

import inspect

import pytest

from qsmbids.recon import registry
from qsmbids.recon.methods import MethodUnavailable, background_method, inversion_method


def test_every_registered_method_resolves_to_its_recon_function():
    from qsmbids.recon.inversion import INVERSION_METHODS

    for spec in registry.METHODS:
        if spec.step == "bg_removal":
            assert callable(background_method(spec.name))
            takes = list(inspect.signature(__import__(spec.module, fromlist=[spec.function])
                                           .__dict__[spec.function]).parameters)
            assert ("b0_direction" in takes) is spec.needs_b0, spec.name
        elif spec.step == "inversion":
            assert callable(inversion_method(spec.name))
    assert tuple(INVERSION_METHODS) == registry.names("inversion")
    with pytest.raises(MethodUnavailable, match="unknown background removal method 'x'"):
        background_method("x")
    with pytest.raises(KeyError, match="choose one of romeo, laplacian"):
        registry.method("unwrapping", "x")


def test_the_cli_settings_and_citation_follow_the_registry(tmp_path):
    from qsmbids.bids.citation import methods_boilerplate
    from qsmbids.cli.parser import parse_args
    from qsmbids.workflows.settings import PRESETS, Settings

    for step in registry.STEPS:
        for name in registry.names(step):
            option = "--" + step.replace("_", "-")
            args = parse_args([str(tmp_path), str(tmp_path / "o"), "participant", option,
                               name])
            assert getattr(args, step) == name
            settings = Settings(bids_dir=tmp_path, output_dir=tmp_path / "o",
                                work_dir=tmp_path / "w", atlas="default",
                                **{step: name})
            assert registry.method(step, name).citation in methods_boilerplate(settings)
        with pytest.raises(SystemExit):
            parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                        "--" + step.replace("_", "-"), "not-a-method"])
    for preset in PRESETS.values():
        for step in ("unwrapping", "bg_removal", "inversion"):
            assert preset[step] in registry.names(step)


def test_the_nodes_accept_exactly_the_registered_methods():
    from nipype.interfaces.base import traits

    from qsmbids.interfaces.recon import (
        DipoleInversion,
        EstimateField,
        ReferenceSusceptibility,
        RemoveBackground,
    )

    for interface, trait, step in ((EstimateField, "unwrapping", "unwrapping"),
                                   (RemoveBackground, "method", "bg_removal"),
                                   (DipoleInversion, "method", "inversion"),
                                   (ReferenceSusceptibility, "method", "reference")):
        node = interface()
        assert getattr(node.inputs, trait) == registry.names(step)[0]  # the default
        for name in registry.names(step):
            setattr(node.inputs, trait, name)
        with pytest.raises(traits.TraitError):
            setattr(node.inputs, trait, "not-a-method")
