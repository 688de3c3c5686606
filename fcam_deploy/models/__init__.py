"""fcam_deploy.models"""
