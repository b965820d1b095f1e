"""annotation_export"""
