"""fcam_deploy.runtime"""
