"""The toy world: ``toyworld`` (rendered faces and captions), ``toyattributes``, ``oracle`` (reads each face's
attributes) and ``evaluate`` (measures an edit: success, attributes kept, LPIPS)."""
